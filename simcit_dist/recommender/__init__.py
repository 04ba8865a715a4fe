"""Generative recommender over semantic IDs (TIGER-style), trained with DeepSpeed under Ray Train.

Modules, in pipeline order:

- ``config``      typed configs (model, data split, training + DeepSpeed section, eval) and job configs
- ``catalog``     a published SID table as a token vocabulary and item <-> SID lookups
- ``sequences``   per-user chronological sequences (Ray Data + polars), split protocols
- ``examples``    a worker's shard, histories, training batches
- ``model``       the encoder-decoder transformer
- ``trie``/``beam`` prefix trie of valid SIDs (CSR arrays) and batched constrained beam search
- ``metrics``     item-level Recall/NDCG@K
- ``engine``      DeepSpeed engine creation, DeepSpeed and plain-DDP training steps
- ``trainer``     Ray Train ``TorchTrainer`` loop with resumable DeepSpeed checkpoints
- ``evaluation``  local and Ray-distributed evaluation (with a most-popular baseline)
- ``pipeline``    ``train_and_evaluate`` / ``evaluate_trained``: the library entry points jobs call
"""
