"""convnp vs PyTorch throughput; the code lives in ``convnp.bench`` so ``convnp bench`` runs the same thing.

python benchmarks/bench_vs_torch.py [--quick] [--networks mnist_cnn,lenet5,convnet_bn]
"""

import sys

from convnp.bench import main

if __name__ == "__main__":
    sys.exit(main())
