"""The search loop's pieces, each one concern (NNI's strategy middleware, Optuna's ask/tell and
pruners, as plain function calls):

- `session.SearchSession`: `ask()` gives the next update's batch (enqueued networks first, then the
  controller's proposals, and the promotions due), `evaluate(batch)` gets its results, `tell(batch)`
  teaches the controller and records the update;
- `middleware`: what happens to each proposal before training (deduplication, the gates) and
  after every result (failure handling);
- `stops`: the rules that end a search early (`--max-minutes`, `--max-evaluated`);
- `pruners`: what decides how long a child trains (median stopping, ASHA).

`edgenas.search.run_search` puts them together.
"""
