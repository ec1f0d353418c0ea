"""Orchestration on Ray: one entry point per job (``python -m ray_jobs.<job>``); the science is elsewhere."""
