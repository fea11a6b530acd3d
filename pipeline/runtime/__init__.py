"""Where and how the model runs: device and precision, batching, bounded reader threads, the CPU allocator."""
