"""Fine-tune the shipped ethanol-xtb potential (H, C, O) onto methylamine, CH3NH2 (N is new).

    .venv/bin/python examples/finetune_new_element.py [WORKDIR]

1. labels ~60 frames of methylamine with GFN2-xTB (tblite) Langevin MD;
2. fine-tunes for ~2 minutes: N is added to the model without changing its ethanol
   predictions, reference energies are refitted, 20 % of the training set is replayed
   ethanol frames, the learning rate is 10x below training's;
3. prints the errors on methylamine and on ethanol (held-out test set) before and after.
The same from the shell:
    gdlphys finetune ethanol-xtb --train methylamine.h5 --replay datasets/ethanol-xtb/train.h5 \
        --original-test datasets/ethanol-xtb/test.h5 --max-time 2m -o RUN_DIR
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from gdlphys.data.label import label_smiles
from gdlphys.paths import find_shipped
from gdlphys.train.finetune import default_finetune_fit, finetune_potential, format_errors


def main(workdir: Path) -> None:
    ethanol = find_shipped("datasets", "ethanol-xtb")
    new_data = label_smiles(["CN"], workdir / "methylamine.h5", frames=60, stride=10, equilibration_steps=100)
    result = finetune_potential(
        "ethanol-xtb", new_data.path, workdir / "run",
        replay=ethanol / "train.h5", replay_fraction=0.2, original_test=ethanol / "test.h5",
        fit=default_finetune_fit(), trainer={"accelerator": "cpu"}, max_time="2m",
    )
    print(f"new species: {result.new_species}; {result.epochs} epochs")
    refit = result.reference_energies
    print("reference energies (eV):", {z: (round(a, 3), round(b, 3)) for z, a, b in zip(refit["species"], refit["old"], refit["new"])})
    print(format_errors(result.errors))
    print(f"potential: {result.potential_path}\nplot: {result.run_dir / 'forgetting.png'}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="gdlphys-finetune-")))
