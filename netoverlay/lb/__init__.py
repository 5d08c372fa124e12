"""The routing mesh: a pure picker and two data planes (asyncio proxy, nftables DNAT) fed by
the endpoint table as data. See `dataplane.open_dataplane` for the entry point."""

from netoverlay.lb.dataplane import (
    DataPlane,
    DataplaneMode,
    SplitDataPlane,
    choose_dataplane,
    open_dataplane,
)
from netoverlay.lb.nft import NftConfig, NftDataPlane, NftError
from netoverlay.lb.picker import Picker
from netoverlay.lb.proxy import ProxyConfig, ProxyDataPlane
from netoverlay.lb.stats import ServiceRates, ServiceStats
from netoverlay.lb.types import Endpoint, ServicePort

__all__ = [
    "DataPlane",
    "DataplaneMode",
    "Endpoint",
    "NftConfig",
    "NftDataPlane",
    "NftError",
    "Picker",
    "ProxyConfig",
    "ProxyDataPlane",
    "ServicePort",
    "ServiceRates",
    "ServiceStats",
    "SplitDataPlane",
    "choose_dataplane",
    "open_dataplane",
]
