"""Fine-tune the shipped ethanol-xtb potential (H, C, O) onto molecules with nitrogen (N is new).

    .venv/bin/python examples/finetune_new_element.py [RUN_DIR] [--max-time 3m]

On shipped data only: datasets/nitrogen-xtb (GFN2-xTB frames of methylamine, ethylamine,
dimethylamine, 2-aminoethanol and acetamide at 500 K). With gdlphys finetune's defaults:

1. N is added to the model without changing any prediction on H/C/O structures;
2. the reference energies are refitted on the new frames together with replayed ethanol frames
   (both GFN2-xTB: one set of offsets serves both; printed: what they became);
3. each epoch half of the training frames are ethanol frames drawn afresh from the parent's own
   training data (found through the hash the potential records), weighted as new frames;
   the parent's weights ramp up to the full learning rate over the first 100 steps, so the
   first, largest gradients (N still far off) go into N's own entries;
4. it prints the force and energy errors on the new chemistry (validation set) and on the
   original domain (the ethanol test set) before and after, and plots them (forgetting.png).

The same from the shell:
    gdlphys finetune ethanol-xtb --train datasets/nitrogen-xtb/train.h5 --valid datasets/nitrogen-xtb/valid.h5 \\
        --original-test datasets/ethanol-xtb/test.h5 --max-time 3m -o RUN_DIR
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from gdlphys.paths import find_shipped
from gdlphys.train.finetune import finetune_potential, format_errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", type=Path, default=None)
    parser.add_argument("--max-time", default="3m")
    args = parser.parse_args()
    run_dir = args.run_dir or Path(tempfile.mkdtemp(prefix="gdlphys-finetune-"))
    nitrogen, ethanol = find_shipped("datasets", "nitrogen-xtb"), find_shipped("datasets", "ethanol-xtb")
    result = finetune_potential(
        "ethanol-xtb", nitrogen / "train.h5", run_dir, valid=nitrogen / "valid.h5", original_test=ethanol / "test.h5",
        trainer={"accelerator": "cpu"}, max_time=args.max_time,
    )
    print(f"new elements (Z): {result.new_species}; {result.epochs} epochs")
    refit = result.reference_energies
    print("reference energies (eV):", {z: (round(a, 3), round(b, 3)) for z, a, b in zip(refit["species"], refit["old"], refit["new"])})
    print(format_errors(result.errors))
    print(f"potential: {result.potential_path}\nplot: {result.run_dir / 'forgetting.png'}")


if __name__ == "__main__":
    main()
