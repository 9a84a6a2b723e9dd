"""``bridge coupons push|list``: the worker's code path from the terminal, against the sandbox."""

import os

import pytest
from click.testing import CliRunner

from bridge.cli import cli
from tests.conftest import STORE_HASH, install_store


@pytest.fixture
def run(environ, bigcommerce):
    clean = {key: None for key in os.environ if key.startswith("BRIDGE_")}
    promotion = bigcommerce.add_promotion()

    def invoke(*args, **env):
        extra = {f"BRIDGE_{key.upper()}": value for key, value in env.items()}
        return CliRunner().invoke(cli, ["coupons", *args], env={**clean, **environ, "BRIDGE_COUPONS_PROMOTION_ID": str(promotion), **extra})

    invoke.promotion = promotion
    return invoke


def test_push_creates_the_code_and_says_so(run, bigcommerce):
    result = run("push", "ANNA-10")
    assert result.exit_code == 0, result.output
    assert f"Code ANNA-10 (store {STORE_HASH}): pushed." in result.output
    assert bigcommerce.coupon_code("ANNA-10")["promotion_id"] == run.promotion

    again = run("push", "anna-10")
    assert again.exit_code == 0
    assert "pushed (before this command)" in again.output
    assert len(bigcommerce.recorded(r"/codes$", "POST")) == 1


def test_push_of_a_code_bigcommerce_has_is_fine(run, bigcommerce):
    bigcommerce.add_coupon_code("OLD-5", run.promotion)
    result = run("push", "OLD-5")
    assert result.exit_code == 0, result.output
    assert "already existed" in result.output


def test_a_refused_code_fails_with_the_reason_and_is_listed(run, bigcommerce):
    bigcommerce.refuse_coupon_codes("Promotion is disabled.")
    result = run("push", "NOPE-1")
    assert result.exit_code == 1
    assert "failed: BigCommerce answered HTTP 422: Promotion is disabled." in result.output

    listed = run("list")
    assert listed.exit_code == 0
    assert "NOPE-1" in listed.output and "failed" in listed.output and "Promotion is disabled." in listed.output

    bigcommerce.refuse_coupon_codes(None)  # fixed: pushing it again tries again
    assert run("push", "NOPE-1").exit_code == 0
    assert "pushed" in run("list").output


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["push", "BAD/CODE"], {}, "Not a code BigCommerce accepts: the code 'BAD/CODE' has characters BigCommerce refuses"),
        (["push", "X" * 51], {}, "the code is 51 characters long"),
        (["push", "OK1"], {"coupons_promotion_id": None}, "Coupon push is off: add a [coupons] section"),
        (["push", "OK1", "--store", "nosuch"], {}, "The bridge does not serve store nosuch"),
    ],
    ids=["characters", "too long", "push off", "unknown store"],
)
def test_push_errors_exit_2_with_a_clear_message(run, bigcommerce, args, env, message):
    result = run(*args, **env)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert bigcommerce.recorded(r"/codes$", "POST") == []


def test_push_with_several_stores_needs_store(run, settings, bigcommerce):
    install_store(settings, "app2store")
    result = run("push", "OK1")
    assert result.exit_code == 2
    assert "choose one with --store" in result.output
    assert run("push", "OK1", "--store", STORE_HASH).exit_code == 0


def test_list_when_nothing_was_pushed(run):
    result = run("list")
    assert (result.exit_code, result.output.strip()) == (0, "No coupon code pushed yet.")
