"""The oversight experiment: finetune a capable base on the data an oversight scheme picks, with a
neutral prompt, and see which policy each run generalises to on hard problems.

Everything it needs is the default of `Experiment`: one finetuning phase on the scheme's labels, the
neutral prompt, the standard scorer, `seeds` runs.
"""

from __future__ import annotations

from molab.experiments import Experiment, register


@register
class Oversight(Experiment):
    name = "oversight"
