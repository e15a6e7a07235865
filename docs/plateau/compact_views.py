"""Test-time views for the compact preset: view_margin.py's study of each seed's compact model (its own recipe,
configs/compact.json, with the views off) on the validation split: clean accuracy, the suite's mean, the share of
images viewed and the temperature fitted, read once, through the five views, and below each margin.

    python docs/plateau/compact_views.py 0,1,2,3,4 --precision fp32 | grep "^{" > docs/plateau/compact-views.jsonl
    python docs/plateau/compact_views.py 0,1,2,3,4 --precision bf16 | grep "^{" >> docs/plateau/compact-views.jsonl
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from view_margin import main
from views import study_arguments

if __name__ == "__main__":
    seeds, _, test, precision = study_arguments(sys.argv[1:])
    main(seeds, test, precision, arch="compact")
