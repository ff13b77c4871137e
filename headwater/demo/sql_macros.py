"""DuckDB macros the landing step uses to render dirty raw values from clean ones.

Rendering strings in SQL keeps the generator vectorised: numpy decides *which* variant each
value gets (a small integer), DuckDB builds the strings.
"""

from __future__ import annotations

import duckdb

MACROS: tuple[str, ...] = (
    # Case and whitespace dirt; variants 0-5 are clean (60 %).
    """create or replace temp macro hw_dirty_email(e, v) as case v
        when 6 then upper(e)
        when 7 then ' ' || e
        when 8 then upper(substr(e, 1, 1)) || substr(e, 2) || ' '
        when 9 then split_part(e, '@', 1) || '@' || upper(split_part(e, '@', 2)) || '  '
        else e end""",
    # The national number spaced as people write it in each country.
    """create or replace temp macro hw_spaced(country, nsn) as case
        when country in ('US', 'CA') then
            substr(nsn, 1, 3) || ' ' || substr(nsn, 4, 3) || ' ' || substr(nsn, 7)
        when country = 'GB' and nsn like '2%' then
            substr(nsn, 1, 2) || ' ' || substr(nsn, 3, 4) || ' ' || substr(nsn, 7)
        when country = 'GB' then substr(nsn, 1, 4) || ' ' || substr(nsn, 5)
        when country = 'DE' then substr(nsn, 1, 3) || ' ' || substr(nsn, 4)
        when country = 'FR' then substr(nsn, 1, 1) || ' ' || substr(nsn, 2, 2) || ' '
            || substr(nsn, 4, 2) || ' ' || substr(nsn, 6, 2) || ' ' || substr(nsn, 8)
        else substr(nsn, 1, 3) || ' ' || substr(nsn, 4, 3) || ' ' || substr(nsn, 7) end""",
    # Formats 0-7. National formats of non-NANP countries only where the record says which
    # country it is from (national_ok); otherwise they fall back to an international format.
    """create or replace temp macro hw_phone_format(country, national_ok, f) as case
        when country in ('US', 'CA') then
            ['e164', 'paren', 'dots', 'intl_spaced', 'dashes', 'trunk_dashes', 'intl_00',
             'digits'][f + 1]
        when f in (3, 6) and national_ok then 'national'
        when f in (3, 6) then 'intl_spaced'
        else ['e164', 'intl_spaced', 'intl_00', '', 'intl_dashes', 'intl_00_digits', '',
              'intl_spaced'][f + 1] end""",
    """create or replace temp macro hw_dirty_phone(country, cc, nsn, national_ok, f) as
        case hw_phone_format(country, national_ok, f)
        when 'e164' then '+' || cc || nsn
        when 'paren' then '(' || substr(nsn, 1, 3) || ') ' || substr(nsn, 4, 3) || '-'
            || substr(nsn, 7)
        when 'dots' then replace(hw_spaced(country, nsn), ' ', '.')
        when 'intl_spaced' then '+' || cc || ' ' || hw_spaced(country, nsn)
        when 'dashes' then replace(hw_spaced(country, nsn), ' ', '-')
        when 'trunk_dashes' then '1-' || replace(hw_spaced(country, nsn), ' ', '-')
        when 'intl_00' then '00' || cc || ' ' || hw_spaced(country, nsn)
        when 'digits' then nsn
        when 'national' then '0' || hw_spaced(country, nsn)
        when 'intl_dashes' then '+' || cc || '-' || replace(hw_spaced(country, nsn), ' ', '-')
        when 'intl_00_digits' then '00' || cc || nsn
        end""",
    # Deterministic uuid-shaped ids from a seed and a name.
    # (one md5 per id: a macro argument is re-evaluated at every use)
    """create or replace temp macro hw_uuid(s) as
        regexp_replace(md5(s), '^(.{8})(.{4}).(.{3}).(.{3})(.{12})$', '\\1-\\2-4\\3-a\\4-\\5')""",
)


def install(con: duckdb.DuckDBPyConnection) -> None:
    for statement in MACROS:
        con.execute(statement)
