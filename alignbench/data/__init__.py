"""Data: one Lightning data module per data set (the modules here, named in ``conf/data/``),
built from three kinds of parts:

- :mod:`.generator`: the built-in synthetic scenes, their captions and questions (exact boxes);
- :mod:`.readers`: readers of the released file layouts (VQA v2, CUB/AttnGAN, SCAN precomp,
  Flickr30k Entities), each checked against the official format;
- :mod:`.datasets`: the tensors, batches and base data modules of each task, and the vocabulary.

:mod:`.base` holds what every data module shares (the on-disk cache, rank sharding).
"""
