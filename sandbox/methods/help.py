"""help.*: configuration the client asks for on every connect."""

from __future__ import annotations

from telethon.tl import functions, types

from sandbox.methods import Call, handles
from sandbox.world import DC_ID, now

#: DC ids the config lists. All point at the sandbox itself, so a client that wanders to
#: another DC (file downloads, migrations) still lands here.
_DC_IDS = (1, 2, 3, 4, 5)


@handles(functions.help.GetConfigRequest, auth=False)
async def get_config(call: Call, _query: functions.help.GetConfigRequest) -> types.Config:
    """The config, with every DC option pointing at the sandbox's own host and port."""
    date = now()
    return types.Config(
        date=date,
        expires=date + 3600,
        test_mode=False,
        this_dc=DC_ID,
        dc_options=[
            types.DcOption(id=dc, ip_address=call.world.host, port=call.world.port)
            for dc in _DC_IDS
        ],
        dc_txt_domain_name="sandbox.invalid",
        chat_size_max=200,
        megagroup_size_max=200_000,
        forwarded_count_max=100,
        online_update_period_ms=210_000,
        offline_blur_timeout_ms=5_000,
        offline_idle_timeout_ms=30_000,
        online_cloud_timeout_ms=300_000,
        notify_cloud_delay_ms=30_000,
        notify_default_delay_ms=1_500,
        push_chat_period_ms=60_000,
        push_chat_limit=2,
        edit_time_limit=172_800,
        revoke_time_limit=2_147_483_647,
        revoke_pm_time_limit=2_147_483_647,
        rating_e_decay=2_419_200,
        stickers_recent_limit=200,
        channels_read_media_period=604_800,
        call_receive_timeout_ms=20_000,
        call_ring_timeout_ms=90_000,
        call_connect_timeout_ms=30_000,
        call_packet_timeout_ms=10_000,
        me_url_prefix="https://t.me/",
        caption_length_max=1024,
        message_length_max=4096,
        webfile_dc_id=DC_ID,
    )


@handles(functions.help.GetNearestDcRequest, auth=False)
async def get_nearest_dc(
    _call: Call, _query: functions.help.GetNearestDcRequest
) -> types.NearestDc:
    """Always the sandbox's own DC."""
    return types.NearestDc(country="XX", this_dc=DC_ID, nearest_dc=DC_ID)
