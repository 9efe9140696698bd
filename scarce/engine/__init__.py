"""The training engine: what every method shares, apart from the methods themselves.

* :mod:`scarce.engine.trainer` — :class:`Trainer` owns the loop (batches, steps, validation,
  checkpoint selection, logs, exact resume, DDP);
* :mod:`scarce.engine.method` — :class:`Method` (a method overrides its step and, if it needs
  them, setup/finalize hooks), :class:`TrainContext` (what a method may use: data, generator,
  optimiser factory, the optimiser step), :class:`Batch`;
* :mod:`scarce.engine.spec` — the run's method as the trainer takes it (resolved once by the
  caller, passed down: the engine never imports the methods);
* :mod:`scarce.engine.optim` — the optimiser registry, learning-rate schedules, EMA of weights;
* :mod:`scarce.engine.bilevel` — unrolled steps and hypergradients (E2EAug's 3-level optimisation).

Methods live in :mod:`scarce.methods` (one file each, grouped by family). Nothing is imported
here, so ``import scarce`` stays free.
"""
