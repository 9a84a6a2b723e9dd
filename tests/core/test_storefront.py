"""The pure half of the storefront cart id: which origins are the store's, and whether a claim counts."""

from __future__ import annotations

import pytest

from bridge.core.payload import (
    STOREFRONT_CONFIRMED,
    STOREFRONT_MISMATCH,
    STOREFRONT_SILENT,
    check_storefront_claim,
    check_storefront_claims,
)
from bridge.core.storefront import origin_of, store_origins

ORDER_CART = "d30016e2-23c0-4a90-884f-2e92ac135476"
CONVERTED = "5e1c0a77-aaaa-4bbb-8ccc-0123456789ab"


@pytest.mark.parametrize(
    ("given", "origin"),
    [
        ("https://Shop.Example.com/", "https://shop.example.com"),
        ("https://shop.example.com:443/checkout", "https://shop.example.com"),
        ("http://shop.example.com:80", "http://shop.example.com"),
        ("https://shop.example.com:8443", "https://shop.example.com:8443"),
        ("shop.example.com", "https://shop.example.com"),
        ("  https://shop.example.com.  ", "https://shop.example.com"),
        ("ftp://shop.example.com", None),
        ("https://user@shop.example.com", None),
        ("https://shop_example.com", None),
        ("https://shop.example.com:99999", None),
        ("https://", None),
        ("", None),
        (None, None),
        (42, None),
    ],
)
def test_origin_of(given, origin):
    assert origin_of(given) == origin


def test_store_origins_are_its_domain_secure_url_and_permanent_address():
    info = {"domain": "shop.example.com", "secure_URL": "https://www.shop.example.com", "features": {"sitewidehttps_enabled": True}}
    assert store_origins(info, "ABC123") == [
        "https://shop.example.com",
        "https://store-abc123.mybigcommerce.com",
        "https://www.shop.example.com",
    ]
    plain = {"domain": "shop.example.com", "secure_url": None, "features": {"sitewidehttps_enabled": False}}
    assert store_origins(plain, "abc123") == [
        "http://shop.example.com",
        "https://shop.example.com",
        "https://store-abc123.mybigcommerce.com",
    ]
    assert store_origins({"domain": None}, "abc123") == ["https://store-abc123.mybigcommerce.com"]


def test_a_claim_counts_only_when_it_names_one_of_the_orders_own_carts():
    known = {"order": ORDER_CART, "cart_converted": CONVERTED}
    assert check_storefront_claim(ORDER_CART.upper(), known).value == ORDER_CART  # the server's spelling is reported
    assert check_storefront_claim(f" {CONVERTED} ", known).value == CONVERTED
    assert check_storefront_claim(ORDER_CART, known).note == STOREFRONT_CONFIRMED
    forged = check_storefront_claim("66666666-7777-4888-8999-aaaaaaaaaaaa", known)
    assert (forged.value, forged.note) == (None, STOREFRONT_MISMATCH)
    # A storefront entry among the known ids is not a server-known cart.
    forger = "66666666-7777-4888-8999-aaaaaaaaaaaa"
    assert check_storefront_claim(forger, {"storefront": forger}).value is None
    assert check_storefront_claim(ORDER_CART, {"order": None, "cart_converted": "  "}).note == STOREFRONT_MISMATCH
    for silent in (None, "", "   "):
        assert check_storefront_claim(silent, known) == check_storefront_claim(None, {})
        assert check_storefront_claim(silent, known).note == STOREFRONT_SILENT


def test_of_several_claims_the_one_naming_the_orders_cart_is_used():
    known = {"order": ORDER_CART, "cart_converted": CONVERTED}
    forged = "66666666-7777-4888-8999-aaaaaaaaaaaa"
    assert check_storefront_claims([forged, ORDER_CART.upper()], known) == check_storefront_claim(ORDER_CART, known)
    assert check_storefront_claims([forged, forged.replace("6", "5")], known).note == STOREFRONT_MISMATCH
    assert check_storefront_claims([], known).note == STOREFRONT_SILENT
