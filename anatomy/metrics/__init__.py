"""The math the analyses, distillation and the cost tool share: arrays in, numbers and dataclasses out.

No analysis, encoder or file format here (numpy, and torch inside the functions that use it): every room above
may import these modules, and they import nothing of the package but anatomy.errors.

    bf16_gemm       bfloat16 products with float32 output (MKL on AMX), where the CPU runs them fast
    intrinsic_dim   TwoNN and MLE estimators, row deduplication, the bootstrap spread
    knn             exact k nearest neighbours (low-precision candidates, verified, float64 distances)
    knn_candidates  the search's per-row candidate lists and their batched merging
    knn_operand     the search operand and its rigorous per-row error bound
    points          checking a point cloud (and loading one from .npy) for the estimators
    positional      the anatomy of a positional table (cosines, block means, PCA)
    similarity      student-teacher agreement: per-token and pooled cosine, kNN overlap
    spectra         the effective-rank family of a spectrum, spectra of embedding matrices
"""
