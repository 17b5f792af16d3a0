"""Model-agnostic training: one flat loop for one CPU process, one GPU and ``torchrun``.

Modules (import them directly; nothing here runs at import time):

- ``distributed``: ``setup_distributed()`` → ``DistInfo`` (rank, world_size, local_rank,
  device, is_main), gloo on CPU / nccl on GPU, one local process without torchrun;
  ``print0``, ``cleanup``, ``parallelize`` (DDP, or FSDP2 ``fully_shard`` per block),
  ``grad_sync`` (no gradient all-reduce on non-final accumulation micro-steps).
- ``optim``: ``OptimConfig``; AdamW with weight decay on matrices only; ``lr_at`` (warm-up +
  cosine, a pure function of the step); ``clip_grad_norm``; ``EMA``.
- ``state``: ``TrainState`` (step, epoch, data position, samples/tokens seen, ...) and RNG
  capture/restore for Python, NumPy, torch CPU and CUDA.
- ``checkpoint``: ``save_checkpoint`` (atomic folder, keep-last-k, ``latest`` pointer),
  ``find_latest``, ``load_checkpoint``, ``load_model_weights`` (bf16 → fp32 fine),
  ``save_model_weights``; safetensors + JSON, never pickle.
- ``metrics``: ``MetricsLogger`` (JSONL + TensorBoard event files written without
  TensorBoard), ``read_events`` / ``read_jsonl``.
- ``progress``: the plain-text progress line (loss components, tokens/s, ETA).
- ``batches``: data factories (``shard_batches`` for ``FaceShardDataset``, ``fast_forward``).
- ``loop``: ``TrainConfig``, ``Hooks``, ``train(cfg, model, step_fn, data_factory, out_dir)``.
- ``args``: ``add_train_args(parser)`` and ``overrides_from_args(args)`` for CLIs.

Typical use::

    info = setup_distributed()
    model = build_model(cfg.model)                      # the caller's model
    def step_fn(model, batch):                          # -> (loss, {name: float}, n_tokens)
        out = loss_fn(model, batch)
        return out.loss, {"img": out.img.item()}, batch["ids"].numel()
    factory = shard_batches(dataset, cfg.train.micro_batch_size, collate)
    train(cfg.train, model, step_fn, factory, out_dir, run_config=cfg, dist_info=info,
          hooks=Hooks(on_sample=write_grid, extra_files=copy_tokenizers))
    cleanup(sync=True)  # a normal exit: all ranks leave together

Launch the same script with ``torchrun --nproc-per-node N`` for data parallelism, with
``train.parallel=fsdp`` for models that do not fit one device. Killed runs continue where
the last checkpoint left off (``--resume auto``) with the identical loss trajectory.
"""
