"""The HTTP service: FastAPI app that validates uploads, enqueues jobs and serves their progress and results."""
