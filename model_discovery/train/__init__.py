"""Training, shared by the checker and verification: the corpus and its tokens
(:mod:`~model_discovery.train.corpus`, :mod:`~model_discovery.train.tokenizer`) and the one
training loop (:mod:`~model_discovery.train.loop`): ``train`` for verification runs, ``fit`` for the
checker's effectiveness check and the synthetic probes. Imports only ``gau`` and ``errors``.
"""
