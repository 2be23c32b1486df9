"""Fine-tune the shipped GFN2-xTB potential (organic-xtb) onto DFT labels (PBE/def2-SVP).

    .venv/bin/python examples/finetune_to_dft.py [RUN_DIR] [--max-time 3m]

On shipped data only: datasets/small-dft (200 training and 48 test frames of eight small H/C/N/O
molecules, geometries from xTB MD, energies and forces from PySCF PBE/def2-SVP; see its card).
With gdlphys finetune's defaults:

1. the reference energies are refitted on the DFT frames by least squares: a PBE molecule lies
   hundreds of eV below a GFN2-xTB one, and the per-element offsets absorb almost all of it
   (printed: what they became, and the residual the offsets leave);
2. replay: the parent's own xTB training data (datasets/nci-xtb) is rehearsed, forces only,
   since xTB energies would contradict the new reference energies;
3. it prints the force and energy errors against DFT on the test set before (the xTB potential
   with refitted offsets) and after, and on the original xTB domain (forgetting), and plots them.

The same from the shell:
    gdlphys finetune organic-xtb --train datasets/small-dft/train.h5 --max-time 3m -o RUN_DIR
    gdlphys eval RUN_DIR datasets/small-dft/test.h5
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from gdlphys.data.datamodule import GraphDataset
from gdlphys.models.files import load_potential
from gdlphys.models.surgery import refit_reference_energies
from gdlphys.paths import find_shipped
from gdlphys.train.finetune import dataset_errors, finetune_potential, format_errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", type=Path, default=None)
    parser.add_argument("--potential", default="organic-xtb", help="the xTB potential to start from")
    parser.add_argument("--max-time", default="3m")
    args = parser.parse_args()
    run_dir = args.run_dir or Path(tempfile.mkdtemp(prefix="gdlphys-finetune-dft-"))
    dft, nci = find_shipped("datasets", "small-dft"), find_shipped("datasets", "nci-xtb")

    parent = load_potential(args.potential).float()
    test = GraphDataset(dft / "test.h5", parent.cutoff, torch.float32)
    as_is = dataset_errors(parent, test)
    train = GraphDataset(dft / "train.h5", parent.cutoff, torch.float32)
    offsets_only = load_potential(args.potential).float()
    refit_reference_energies(offsets_only, train)  # the xTB potential, its offsets moved to DFT's
    before = dataset_errors(offsets_only, test)

    result = finetune_potential(
        args.potential, dft / "train.h5", run_dir, original_test=nci / "test.h5",
        trainer={"accelerator": "cpu"}, max_time=args.max_time,
    )
    after = dataset_errors(load_potential(result.potential_path).float(), test)
    refit = result.reference_energies
    print(f"{result.epochs} epochs; reference energies (eV), xTB -> PBE/def2-SVP:")
    for z, old, new in zip(refit["species"], refit["old"], refit["new"]):
        print(f"  Z={z:<3} {old:>12.3f} -> {new:>12.3f}")
    print(f"\nDFT test set ({len(test)} frames)          force MAE (meV/Å)   energy MAE (meV/atom)")
    for name, errors in (("xTB potential as is", as_is), ("xTB potential, DFT offsets", before), ("fine-tuned", after)):
        print(f"  {name:<34}{1000 * errors['forces_mae']:>12.1f}{1000 * errors['energy_per_atom_mae']:>20.1f}")
    print("\n" + format_errors(result.errors))
    print(f"potential: {result.potential_path}\nplot: {result.run_dir / 'forgetting.png'}")


if __name__ == "__main__":
    main()
