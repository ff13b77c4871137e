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
{#- Each record's slots are looked up in int_identity_identifiers one type at a time and kept
    in wide form: the anchor is the least key of the row and the star its other keys, so no
    (type, value) list of observations is built, joined on text or grouped by record.
    A key is type_priority * 10^12 + identifier_id (ids are below 10^12): its least is the
    highest-priority identifier, ties to the smallest id. -#}
{%- set slot_types = ['user_id', 'crm_contact_id', 'email', 'phone', 'anonymous_id'] -%}
{%- set no_key = '900000000000000000' -%}
with keyed as (

    select
        r.record_id,
        r.first_seen_at,
        r.record_count,
        {%- for t in slot_types %}
        i_{{ loop.index }}.type_priority * 1000000000000 + i_{{ loop.index }}.identifier_id
            as key_{{ loop.index }},
        {%- endfor %}
        -- previous_id is a user_id when that value is used as a user_id (usable or not, as
        -- int_identity_identifiers types it), else an anonymous_id
        case
            when k.identifier_id is not null then
                case when k.rejection_reason is null
                    then k.type_priority * 1000000000000 + k.identifier_id end
            else i_prev.type_priority * 1000000000000 + i_prev.identifier_id
        end as key_prev
    from {{ ref('int_identity_records') }} as r
    {%- for t in slot_types %}
    left join {{ ref('int_identity_identifiers') }} as i_{{ loop.index }}
        on i_{{ loop.index }}.identifier_type = '{{ t }}'
        and i_{{ loop.index }}.rejection_reason is null
        and i_{{ loop.index }}.identifier_value = r.{{ t }}
    {%- endfor %}
    left join {{ ref('int_identity_identifiers') }} as k
        on k.identifier_type = 'user_id'
        and k.identifier_value = r.previous_id
    left join {{ ref('int_identity_identifiers') }} as i_prev
        on i_prev.identifier_type = 'anonymous_id'
        and i_prev.rejection_reason is null
        and i_prev.identifier_value = r.previous_id

),

{%- set keys = [] -%}
{%- for t in slot_types -%}{%- do keys.append('key_' ~ loop.index) -%}{%- endfor -%}
{%- do keys.append('key_prev') %}

anchored as (

    select
        record_id,
        first_seen_at,
        record_count,
        least(
            {%- for key in keys %}
            coalesce({{ key }}, {{ no_key }}){% if not loop.last %},{% endif %}
            {%- endfor %}
        ) % 1000000000000 as anchor_id,
        {{ keys | join(', ') }}
    from keyed

),

slots as (

    {{ identity_unpivot('anchored', ['record_id', 'first_seen_at', 'record_count', 'anchor_id'],
                        keys, 'slot_key') | indent(4) }}

),

star as (

    -- every other identifier of the record links to its anchor (a slot per column: an
    -- identifier carried in two columns of one record counts that record twice, as before)
    select
        least(anchor_id, slot_key % 1000000000000) as identifier_id_a,
        greatest(anchor_id, slot_key % 1000000000000) as identifier_id_b,
        record_id,
        first_seen_at,
        record_count
    from slots
    where slot_key % 1000000000000 <> anchor_id

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
