"""Radius graphs with periodic shifts, edge vectors, and batching of graph dicts.

Conventions (see :mod:`gdlphys.keys`): edge ``e`` carries a message from source
``j = edge_index[0, e]`` to centre ``i = edge_index[1, e]``; its vector is
``positions[j] - positions[i] + shifts[e] @ cell[batch[i]]``, where the rows of
``cell`` are the lattice vectors. Shifts are integer-valued tensors in the float
dtype of the positions, and refer to the positions as given (not wrapped).

Two neighbour-search back ends sit behind :func:`radius_graph` (``neighbours.py``):

- ``"vesin"`` (the default for CPU tensors, ``vesin_backend.py``): vesin's C++ cell list,
  one call per graph, linear in the number of atoms. It handles triclinic, mixed-periodic
  and small cells (an atom neighbouring its own images) and positions outside the cell
  itself, and has no neighbour cap. It is asked for each pair once and both directions
  are written out here, which costs less than its own full list. A cell list written in
  torch was the other option: more code to keep correct, and no way past vesin's C++ on
  the same algorithm.
- ``"torch-cluster"`` (the default for GPU tensors, ``torch_cluster_backend.py``):
  torch-cluster's search over the periodic images of a padded box (``lattice.py``), with
  ``max_num_neighbors`` grown until nothing is truncated. On the CPU it is much slower
  than vesin and grows faster than linearly with the box, so there it runs only on
  request (the tests check both against ASE).

Both decide the pairs nearest the cutoff with :func:`edge_vectors` (``edges.py``) in the
dtype of the positions: the very formula the models differentiate, so every edge they
see is shorter than the cutoff. :func:`structure_graph` (``structure.py``) makes the graph
dict of one structure, :class:`NeighbourListCache` (``cache.py``) reuses its edges within
a skin, and :func:`collate` (``batching.py``) batches graph dicts.
"""

from gdlphys.graph.batching import collate
from gdlphys.graph.cache import NeighbourListCache
from gdlphys.graph.edges import edge_vectors
from gdlphys.graph.neighbours import Backend, radius_graph
from gdlphys.graph.structure import structure_graph

__all__ = ["Backend", "NeighbourListCache", "collate", "edge_vectors", "radius_graph", "structure_graph"]
