"""The consent gate, in one place: which audience column allows which channel.

The gate is a SQL predicate applied inside the diff query, so a member who has not consented is
never read out of the warehouse; in mirror mode a withdrawal therefore shows up as a remove.
"""

from __future__ import annotations

from activations.destinations.base import Channel

# customer_profiles' consent columns (docs/contracts.md); false when any identifier opted out.
CONSENT_COLUMNS: dict[Channel, str] = {
    Channel.EMAIL: "email_consent",
    Channel.SMS: "sms_consent",
    Channel.ADS: "ads_consent",
}


def consent_column(channel: Channel) -> str | None:
    """The audience column that must be true for this channel, or None for ungated channels."""
    return CONSENT_COLUMNS.get(channel)


def consent_predicate(channel: Channel, alias: str = "a") -> str:
    """SQL that is true only for members who consented; NULL (unknown) counts as no."""
    column = consent_column(channel)
    if column is None:
        return "true"
    return f'{alias}."{column}" is true'
