"""Test-time views of size and stroke where the model is unsure: the product's five (the image and its four 1-pixel
shifts) against the five with the image drawn 10 % (or 5 %) larger and smaller about its centre, and the five with
its strokes made thicker and thinner (halfway to each pixel's 3x3 maximum, and minimum), each read only for the
images whose two highest logits lie less than config.VIEW_MARGIN apart. Per seed, on the validation split: clean
accuracy, the suite's mean and the share of images viewed (more_views.py's rows).

    python docs/plateau/scale_views.py 0,1,2,3,4 > docs/plateau/scale-views.jsonl
"""

import sys

from more_views import CROSS, main
from views import study_arguments

VIEW_SETS = {
    "five": CROSS,
    "seven_scaled_10": CROSS + [("scale", 1.1), ("scale", 0.9)],
    "seven_scaled_5": CROSS + [("scale", 1.05), ("scale", 0.95)],
    "seven_stroked": CROSS + [("stroke", 0.5), ("stroke", -0.5)],
}

if __name__ == "__main__":
    seeds, _, test, precision = study_arguments(sys.argv[1:])
    main(seeds, test, precision, VIEW_SETS)
