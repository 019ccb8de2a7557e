"""Imaging: capture, products, the onboard catalogue, downlink and science targets."""

from flight.imaging.catalogue import Catalogue, CatalogueError, Product, Quota
from flight.imaging.component import Imaging

__all__ = ["Catalogue", "CatalogueError", "Imaging", "Product", "Quota"]
