"""One run's life: compose and check its config (:mod:`.preflight`), build its parts
(:mod:`.build`), train, test and analyse it (:mod:`.train`), write its record
(:mod:`.record`), find it again to skip or resume it (:mod:`.resume`) and work on it once
finished (:mod:`.posthoc`). ``alignbench.cli`` and ``alignbench.compare`` only call into
this package; the models, data and analysis layers never import it.
"""
