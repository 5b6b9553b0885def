"""The adaptive trainer (second half of Radiya-Dixit et al., ICLR 2022).

A model trainer with black-box access to the cloaking tool cloaks the *public* identities'
pictures itself and uses the (clean, cloaked) pairs to

* :mod:`.robust`: fine-tune a robust feature extractor (registered as extractor type
  ``robust``, so it goes through the same ``embed`` -> ``evaluate`` path as any extractor);
* :mod:`.detection`: train a detector of cloaked pictures;

and also runs

* :mod:`.finetune`: the end-to-end classifier (extractor + linear head fine-tuned on the
  scraped training set), beside 1-NN and the linear probe;
* :mod:`.combine`: accuracy-preserving combinations of an accurate and a robust model
  (top-2, confidence thresholding);
* :mod:`.timetravel`: a protected user who switches cloaks halfway.

Their report sections are :mod:`cloakbench.report.adaptive`.

Submodules are imported lazily (``from cloakbench.adaptive import robust``); this package's
``__init__`` imports nothing heavy.
"""
