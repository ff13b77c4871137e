{#-
  One row per distinct identifier (type, normalized value) with an integer id for the graph
  work, when it was first and last seen, how widely it is shared, and whether it is kept out of
  merging (rejection_reason):

  - blocklist: the value matches the identifier_blocklist seed (placeholders: test@test.com,
    +10000000000, 'unknown'...). Such identifiers merge nothing and map to no profile.
  - over_shared: seen with more distinct co-identifiers of some type than identity_over_shared()
    allows (a device seen with two user_ids, an email seen with four user_ids). Co-identifiers
    that are themselves blocklisted do not count, so a placeholder user_id cannot make every
    device look shared. Over-shared identifiers merge nothing; an over-shared anonymous_id (a
    shared device) is still mapped to the profile of the user_id most recently seen on it
    (most_recent_user_id), the way Segment attributes a shared device's anonymous traffic.
-#}
{%- set over_shared = identity_over_shared() -%}
{%- set count_columns = {
    'user_id': 'n_user_ids', 'crm_contact_id': 'n_crm_contact_ids', 'email': 'n_emails',
    'phone': 'n_phones', 'anonymous_id': 'n_anonymous_ids'} -%}
{%- set simple_types = ['user_id', 'anonymous_id', 'email', 'phone', 'crm_contact_id'] -%}
{#- co-occurrence is only counted where a rule needs it: those types, those co-types -#}
{%- set judged_types = over_shared.keys() | list -%}
{%- set counted = [] -%}
{%- for limits in over_shared.values() -%}
  {%- for n in limits.keys() -%}
    {%- if n not in counted -%}{%- do counted.append(n) -%}{%- endif -%}
  {%- endfor -%}
{%- endfor -%}

{#- int_identity_records is referenced directly: a CTE read twice is materialized by DuckDB,
    a full copy of the records before anything is filtered. -#}
with known_user_ids as (

    select distinct user_id from {{ ref('int_identity_records') }} where user_id is not null

),

typed_previous_ids as (

    -- an alias's previous_id is a former user_id when that value is used as a user_id. Only
    -- the alias records are typed here: a typed copy of every record was a CTE read by
    -- several branches, which DuckDB materializes (all of the records' text, 7 s at 1M)
    select
        r.record_id,
        r.previous_id,
        case when k.user_id is not null then 'user_id' else 'anonymous_id' end as previous_id_type,
        r.first_seen_at,
        r.last_seen_at,
        r.record_count
    from {{ ref('int_identity_records') }} as r
    left join known_user_ids as k on r.previous_id = k.user_id
    where r.previous_id is not null

),

identifiers as (

    -- grouped one type at a time, on the value alone: the type is a constant of each branch,
    -- and a previous_id is only ever typed a user_id or an anonymous_id
    {% for t in simple_types %}
    select
        '{{ t }}' as identifier_type,
        identifier_value,
        min(first_seen_at) as first_seen_at,
        max(last_seen_at) as last_seen_at,
        cast(sum(record_count) as bigint) as record_count
    from (
        select {{ t }} as identifier_value, first_seen_at, last_seen_at, record_count
        from {{ ref('int_identity_records') }}
        where {{ t }} is not null
        {%- if t in ['user_id', 'anonymous_id'] %}
        union all
        select previous_id, first_seen_at, last_seen_at, record_count
        from typed_previous_ids
        where previous_id_type = '{{ t }}'
        {%- endif %}
    ) as observed
    group by identifier_value
    {% if not loop.last %}union all{% endif %}
    {% endfor %}

),

numbered as (

    -- numbered in canonical order (earliest seen, then type priority, then value): the
    -- smallest id of a cluster is its canonical member, and the user_id split's ties go to
    -- the earliest-seen user_id. Numbered before the counts and rejections join: the sort
    -- carries every column along, and on the five columns here it costs half as much
    select
        row_number() over (
            order by first_seen_at, {{ identity_priority_sql('identifier_type') | indent(12) }},
                identifier_value, identifier_type
        ) as identifier_id,
        identifier_type,
        identifier_value,
        first_seen_at,
        last_seen_at,
        record_count
    from identifiers

),

blocklist as (

    select
        lower(identifier_type) as identifier_type,
        lower(identifier_value) as identifier_value,
        lower(match_type) as match_type,
        note
    from {{ ref('identifier_blocklist') }}

),

blocklist_hits as (

    select i.identifier_id, b.identifier_value as entry, b.note
    from numbered as i
    inner join blocklist as b
        on lower(i.identifier_value) = b.identifier_value
        and b.match_type = 'exact'
        and b.identifier_type in (i.identifier_type, 'any')
    union all
    select i.identifier_id, b.identifier_value as entry, b.note
    from numbered as i
    inner join blocklist as b
        on b.match_type = 'pattern'
        and b.identifier_type in (i.identifier_type, 'any')
        and lower(i.identifier_value) like b.identifier_value

),

blocked as (

    select
        identifier_id,
        min(entry) as blocklist_entry,
        min(note) as blocklist_note
    from blocklist_hits
    group by identifier_id

),

previous_ids as (

    -- the alias records' previous_ids looked up on their own: joined to every record, the
    -- lookup hashed all five million identifiers for the one record in twelve that has one
    select p.record_id, p.previous_id_type, n.identifier_id
    from typed_previous_ids as p
    inner join numbered as n
        on n.identifier_type = p.previous_id_type
        and n.identifier_value = p.previous_id

),

clean_records as (

    -- each record's identifiers as identifier_ids, blocklisted ones removed: what
    -- co-occurrence counts see. Looked up once per column here, so that the distinct pairs
    -- and counts below group integers instead of (type, value) text
    select
        r.last_seen_at,
        p.previous_id_type,
        case when b_prev.identifier_id is null then p.identifier_id end as previous_id
        {%- for t in simple_types %},
        case when b_{{ loop.index }}.identifier_id is null then n_{{ loop.index }}.identifier_id end
            as {{ t }}
        {%- endfor %}
    from {{ ref('int_identity_records') }} as r
    left join previous_ids as p on r.record_id = p.record_id
    {%- for t in simple_types %}
    left join numbered as n_{{ loop.index }}
        on n_{{ loop.index }}.identifier_type = '{{ t }}'
        and n_{{ loop.index }}.identifier_value = r.{{ t }}
    left join blocked as b_{{ loop.index }}
        on b_{{ loop.index }}.identifier_id = n_{{ loop.index }}.identifier_id
    {%- endfor %}
    left join blocked as b_prev on b_prev.identifier_id = p.identifier_id

),

{%- set observed = [] -%}
{%- for t in simple_types + ['previous_id'] if t in judged_types or t == 'previous_id' -%}
  {%- if t == 'previous_id' -%}
    {%- do observed.append("case when previous_id_type in ('" ~ (judged_types | join("', '"))
                           ~ "') then previous_id end") -%}
  {%- else -%}{%- do observed.append(t) -%}{%- endif -%}
{%- endfor %}

clean_observations as (

    -- one row per (judged identifier, record), with the record's other identifiers (its
    -- user_id always: a device's most recent one is kept): one unnest of the records, not a
    -- union of branches that each read a materialized copy
    {%- set kept = ['last_seen_at'] + counted + (['user_id'] if 'user_id' not in counted else []) %}
    {{ identity_unpivot('clean_records', kept, observed, 'identifier_id') | indent(4) }}

),

seen as (

    -- every judged identifier (counts are 0, not null, when nothing was seen with it). Most
    -- identifiers are seen with one co-identifier of a type, or none: min and max tell those
    -- counts (0, or 1 when they are equal) in the one group by, and only the identifiers
    -- seen with two or more of a type have their distinct co-identifiers counted below
    select
        identifier_id,
        {%- for n in counted %}
        min({{ n }}) as min_{{ n }},
        max({{ n }}) as max_{{ n }},
        {%- endfor %}
        max_by(user_id, case when user_id is not null then last_seen_at end)
            as most_recent_user_id_id
    from clean_observations
    where identifier_id is not null
    group by identifier_id

),

several as (

    select identifier_id
    from seen
    where {% for n in counted %}min_{{ n }} <> max_{{ n }}{% if not loop.last %} or {% endif %}{% endfor %}

),

co_identifiers as (

    -- distinct (identifier, co-type, co-identifier) of the identifiers seen with several
    {%- set co_columns = {'co_pos': [], 'co_id': []} -%}
    {%- for n in counted -%}
      {%- do co_columns['co_pos'].append(loop.index0) -%}
      {%- do co_columns['co_id'].append(n) -%}
    {%- endfor %}
    select distinct identifier_id, co_pos, co_id
    from (
        {{ identity_unpivot_columns(
            '(select * from clean_observations where identifier_id in (select identifier_id from several)) as o',
            ['identifier_id'], co_columns) | indent(8) }}
    ) as pairs
    where co_id is not null

),

co_counts as (

    select
        identifier_id
        {%- for t, c in count_columns.items() if t in counted %},
        count(case when co_pos = {{ counted.index(t) }} then 1 end) as {{ c }}
        {%- endfor %}
    from co_identifiers
    group by identifier_id

),

usage as (

    select
        s.identifier_id,
        {%- for t, c in count_columns.items() %}
        {% if t in counted -%}
        case
            when s.min_{{ t }} is null then 0
            when s.min_{{ t }} = s.max_{{ t }} then 1
            else k.{{ c }}
        end
        {%- else -%} cast(null as bigint) {%- endif %} as {{ c }},
        {%- endfor %}
        s.most_recent_user_id_id
    from seen as s
    left join co_counts as k on s.identifier_id = k.identifier_id

),

judged as (

    select
        i.identifier_id,
        i.identifier_type,
        i.identifier_value,
        i.first_seen_at,
        i.last_seen_at,
        i.record_count,
        {%- for c in count_columns.values() %}
        u.{{ c }},
        {%- endfor %}
        mu.identifier_value as most_recent_user_id,
        b.blocklist_entry,
        b.blocklist_note,
        case
            {%- for t, limits in over_shared.items() %}
            {%- for n, max_count in limits.items() %}
            when i.identifier_type = '{{ t }}' and u.{{ count_columns[n] }} > {{ max_count }}
                then 'seen with ' || cast(u.{{ count_columns[n] }} as varchar)
                    || ' distinct {{ n }} values (over-shared above {{ max_count }})'
            {%- endfor %}
            {%- endfor %}
        end as over_shared_detail
    from numbered as i
    left join usage as u on i.identifier_id = u.identifier_id
    left join blocked as b on i.identifier_id = b.identifier_id
    -- the user_id's value, for the shared devices identity_map attributes by it
    left join numbered as mu
        on i.identifier_type = 'anonymous_id'
        and mu.identifier_type = 'user_id'
        and u.most_recent_user_id_id = mu.identifier_id

)

select
    identifier_id,
    identifier_type,
    identifier_value,
    {{ identity_priority_sql('identifier_type') }} as type_priority,
    first_seen_at,
    last_seen_at,
    record_count,
    {%- for c in count_columns.values() %}
    {{ c }},
    {%- endfor %}
    case
        when blocklist_entry is not null then 'blocklist'
        when over_shared_detail is not null then 'over_shared'
    end as rejection_reason,
    case
        when blocklist_entry is not null
            then 'matches blocklist entry ''' || blocklist_entry || ''' (' || coalesce(blocklist_note, 'placeholder') || ')'
        else over_shared_detail
    end as rejection_detail,
    case when identifier_type = 'anonymous_id' then most_recent_user_id end
        as most_recent_user_id
from judged
