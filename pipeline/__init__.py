"""dcq: dataset colour quantization as a staged, offline DVC pipeline."""
