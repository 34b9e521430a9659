"""Thread choice: one thread for small steps (thread hand-offs cost more than a small matmul), all cores for large
ones, the config's number when it gives one; seeded_threads puts everything back."""

from __future__ import annotations

import torch

from dlrun.model.device import SMALL_STEP_MACS, choose_threads, seeded_threads

CPU = torch.device("cpu")


def test_the_configs_thread_count_wins():
    assert choose_threads(3, 10, [4096, 4096], 4096, CPU) == 3
    assert choose_threads(2, 10, [8], 1, CPU) == 2


def test_small_models_get_one_thread_and_large_ones_every_core():
    # The bench's regimes are all small: 10 -> 64-32-16 and 10 -> 512-256 at batch 32 to 1024.
    for hidden, batch in (([64, 32, 16], 32), ([64, 32, 16], 1024), ([512, 256], 32), ([128, 64], 64)):
        assert choose_threads(None, 10, hidden, batch, CPU) == 1
    large = [4096, 4096]  # 10*4096 + 4096*4096 multiply-adds a row, times 256 rows: far above the threshold
    assert 256 * (10 * 4096 + 4096 * 4096) > SMALL_STEP_MACS
    assert choose_threads(None, 10, large, 256, CPU) == torch.get_num_threads()


def test_a_gpu_run_keeps_one_cpu_thread():
    assert choose_threads(None, 10, [4096, 4096], 256, torch.device("cuda")) == 1


def test_seeded_threads_restores_the_thread_count_and_the_global_generator():
    threads_before, state_before = torch.get_num_threads(), torch.get_rng_state()
    with seeded_threads(seed=5, threads=1, device=CPU):
        assert torch.get_num_threads() == 1
        first = torch.rand(3)
    with seeded_threads(seed=5, threads=1, device=CPU):
        assert torch.equal(torch.rand(3), first)  # the seed fixes the draws
    assert torch.get_num_threads() == threads_before
    assert torch.equal(torch.get_rng_state(), state_before)
