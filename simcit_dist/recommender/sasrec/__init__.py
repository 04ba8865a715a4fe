"""SASRec: the ID-based sequential recommender every SID table is shown against.

A self-attentive (causal transformer) model over item-ID embeddings, trained with full softmax
cross-entropy over the whole item catalog (RecBole's SASRec, the strong ID baseline of the
generative-recommendation literature), on the same sequence table, split and item-level
full-ranking metrics as the SID model, through the same Ray Train + DeepSpeed loop
(:mod:`simcit_dist.recommender.trainer`).

- ``config``    typed configs (model; the job: data split, train, eval sections shared with the SID model)
- ``items``     the item catalog SASRec indexes (item ids of the catalog table, fingerprinted)
- ``model``     the causal transformer and its full-softmax loss
- ``batches``   left-aligned training windows and histories
- ``ranking``   full-catalog top-K ranking, model export and loading
- ``training``  the :class:`~simcit_dist.recommender.trainer.WorkerTask` for SASRec
- ``pipeline``  ``train_and_evaluate_sasrec``: sequences, training, best-epoch evaluation, report
"""
