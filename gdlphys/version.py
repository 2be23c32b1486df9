"""The version of gdlphys, on the lowest floor: potential files record it without importing the package's API."""

__version__ = "0.1.0"
