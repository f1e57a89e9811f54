"""The denoising network: architecture and model file, training data, training, inference, CPU kernels."""
