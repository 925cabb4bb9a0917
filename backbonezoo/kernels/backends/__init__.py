"""One module per backend of each operator, NATTEN-style: ``local_reference`` (the specification), ``local_tiled`` and
``local_shifted`` (the fast PyTorch paths, chosen by ``local_torch``), ``local_triton`` and ``local_flex`` (thin
adapters to the GPU kernels). The public API and its argument checks are ``backbonezoo.kernels.local``; the
registered ``torch.library`` operators are ``backbonezoo.kernels.ops`` (CPU) and ``backbonezoo.kernels.triton_ops``
(CUDA)."""
