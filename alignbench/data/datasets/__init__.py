"""Task tensors, batches and base data modules (VQA, retrieval, text-to-image) and the vocabulary."""
