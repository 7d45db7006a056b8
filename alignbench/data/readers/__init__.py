"""Readers of the released file layouts (VQA v2, CUB/AttnGAN, SCAN precomp, Flickr30k Entities)."""
