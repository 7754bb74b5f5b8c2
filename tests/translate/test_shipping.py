"""Tests of gateway.translate.shipping: legacy shipment_info → capture shipping_info."""
from __future__ import annotations

import json

import pytest

from gateway.errors import FaultCode, InvalidParamsError
from gateway.translate.shipping import SHIPPING_METHODS, shipment_info_to_rest, shipping_method
from gateway.wire.values import ShipmentInfo


def test_full_shipment_info() -> None:
    """Company, tracking numbers and a recognised product become one shipping_info object."""
    info = ShipmentInfo(delay_adjust=1, shipping_company="DHL SE", shipping_product="postal",
                        tracking_no="JJD000123", return_tracking_no="RET456")
    result = shipment_info_to_rest(info)
    assert result == [{"shipping_company": "DHL SE", "tracking_number": "JJD000123",
                       "return_tracking_number": "RET456", "shipping_method": "Postal"}]
    assert json.loads(json.dumps(result)) == result


def test_nothing_to_send_is_an_empty_list() -> None:
    """An empty shipment_info (both SDKs always send one) produces no shipping_info."""
    assert shipment_info_to_rest(ShipmentInfo()) == []
    assert shipment_info_to_rest(ShipmentInfo(delay_adjust=2, shipping_company="  ")) == []


@pytest.mark.parametrize(
    ("product", "method"),
    [("Home", "Home"), ("home", "Home"), ("PICKUPSTORE", "PickUpStore"),
     ("pick up point", "PickUpPoint"), ("dhl_packstation", "DHLPackstation"),
     ("click-collect", "ClickCollect"), (" PalletDelivery ", "PalletDelivery"),
     ("Express 9", None), ("", None), ("Hem", None)],
)
def test_shipping_product_only_when_it_names_a_method(product: str, method: str | None) -> None:
    """Case-insensitive enum match → canonical spelling; free text is not sent."""
    assert shipping_method(product) == method
    result = shipment_info_to_rest(ShipmentInfo(shipping_product=product))
    assert result == ([{"shipping_method": method}] if method else [])


def test_every_enum_value_maps_to_itself() -> None:
    """All thirteen REST shipping methods are recognised in their own spelling."""
    assert [shipping_method(m) for m in SHIPPING_METHODS] == list(SHIPPING_METHODS)


@pytest.mark.parametrize("field", ["shipping_company", "tracking_no", "return_tracking_no"])
def test_limits_name_the_legacy_field(field: str) -> None:
    """Over 100 characters → invalid_params naming activateInfo.shipment_info.<field>."""
    assert shipment_info_to_rest(ShipmentInfo(**{field: "x" * 100}))  # at the limit: fine
    with pytest.raises(InvalidParamsError) as info:
        shipment_info_to_rest(ShipmentInfo(**{field: "x" * 101}))
    assert info.value.fault_code == FaultCode.INVALID_PARAMS
    assert info.value.public_message.startswith(f"activateInfo.shipment_info.{field}: ")
