"""The worker process: claims jobs, runs their handlers, records the outcomes.

Modules: claim (batched claims), run (one handler under its timeout), record
(batched completions, failures, releases), heartbeat (lease extension),
recovery (expired leases of any worker), outage (backoff while the store is
down), timing (real and manual time), worker (the Worker itself) and process
(run_worker: signals and wiring from the container).
"""

from conveyor.entrypoints.worker.process import (
    new_worker_id,
    run_event_loop,
    run_worker,
)
from conveyor.entrypoints.worker.worker import Worker

__all__ = ["Worker", "new_worker_id", "run_event_loop", "run_worker"]
