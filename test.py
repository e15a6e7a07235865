"""The original design's evaluation script: python test.py --model models/mnist_model.pth, the same as
`python main.py evaluate` (the evaluation itself is evaluation.py's)."""

import sys

from main import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]], prog="test.py"))
