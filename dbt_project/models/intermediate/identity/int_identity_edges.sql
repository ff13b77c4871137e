{#-
  The identity graph's edges: identifiers that arrived together in a record, between usable
  identifiers only (blocklisted and over-shared ones are dropped before edges are drawn, so they
  can never bridge two people).

  Each record is a star, not a clique: every identifier in it links to the record's anchor, its
  highest-priority usable identifier (identity_type_priority: user_id, then CRM contact, email,
  phone, anonymous_id). A clique would add edges without adding connectivity. Edges are
  undirected and stored once (identifier_id_a < identifier_id_b), with the earliest record that
  carried them as evidence.
-#}
{%- set simple_types = ['user_id', 'anonymous_id', 'email', 'phone', 'crm_contact_id'] -%}

{#- int_identity_records is referenced directly: a CTE read by several branches is
    materialized by DuckDB, a full copy of the records (text) before anything is filtered. -#}
with identifiers as (

    select identifier_id, identifier_type, identifier_value, type_priority
    from {{ ref('int_identity_identifiers') }}
    where rejection_reason is null

),

known_user_ids as (

    select identifier_value as user_id from {{ ref('int_identity_identifiers') }}
    where identifier_type = 'user_id'

),

observations as (

    -- record -> (type, value), typing previous_id as int_identity_identifiers does
    {% for t in simple_types %}
    select
        record_id, first_seen_at, record_count, '{{ t }}' as identifier_type,
        {{ t }} as identifier_value
    from {{ ref('int_identity_records') }}
    where {{ t }} is not null
    union all
    {% endfor %}
    select
        r.record_id,
        r.first_seen_at,
        r.record_count,
        case when k.user_id is not null then 'user_id' else 'anonymous_id' end,
        r.previous_id
    from {{ ref('int_identity_records') }} as r
    left join known_user_ids as k on r.previous_id = k.user_id
    where r.previous_id is not null

),

usable as (

    select o.record_id, o.first_seen_at, o.record_count, i.identifier_id, i.type_priority
    from observations as o
    inner join identifiers as i
        on o.identifier_type = i.identifier_type
        and o.identifier_value = i.identifier_value

),

anchors as (

    -- ids are below 10^12, so priority * 10^12 + id orders by priority, then id
    select
        record_id,
        min(type_priority * 1000000000000 + identifier_id) % 1000000000000 as anchor_id
    from usable
    group by record_id
    having count(*) > 1

),

star as (

    select
        least(a.anchor_id, u.identifier_id) as identifier_id_a,
        greatest(a.anchor_id, u.identifier_id) as identifier_id_b,
        u.record_id,
        -- the record's time and count ride along from observations: no join back to records
        u.first_seen_at,
        u.record_count
    from anchors as a
    inner join usable as u on a.record_id = u.record_id
    where u.identifier_id <> a.anchor_id

),

deduplicated as (

    select
        identifier_id_a,
        identifier_id_b,
        min_by(record_id, first_seen_at) as first_record_id,
        min(first_seen_at) as first_seen_at,
        cast(sum(record_count) as bigint) as record_count
    from star
    group by identifier_id_a, identifier_id_b

)

select
    d.identifier_id_a,
    d.identifier_id_b,
    r.source,
    r.record_key,
    d.first_seen_at,
    d.record_count
from deduplicated as d
inner join {{ ref('int_identity_records') }} as r on d.first_record_id = r.record_id
