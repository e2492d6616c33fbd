"""Merchant discounts: the offer catalog (offers as effective-dated data, docs/offers.md)."""

from cardledger.offers.catalog import Merchant, Offer, OfferCatalog, OfferCatalogError

__all__ = ["Merchant", "Offer", "OfferCatalog", "OfferCatalogError"]
