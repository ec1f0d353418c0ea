"""Lottery-ticket sub-networks by iterative magnitude pruning (DESIGN.md step 6; issue 11).

One module per job: `prunable` (which weights a mask covers), `schedules` (sparsity per round),
`masks` (global magnitude pruning, one-shot and random controls), `packing` (masks as bits for the
store), `overlap` (per-tensor overlap counts and their statistics), `params` (`LotteryParams`),
`learner` and `tasks` (a checkpoint loaded for a task, and the task registry), `language_modelling`
(the LM task), `training` (masked full fine-tuning), `imp` (the rounds), `transfer` (sub-network
transfer and the relative drop). No Ray: `ray_jobs.lottery` schedules these.
"""
