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

  One pass builds the dictionary and the sharing evidence together: the records are unpivoted
  once (each row keeps its record's other identifiers as co_ columns) and grouped once, keeping
  per co-type the smallest and the largest co-value. A record holds one value per column, so an
  identifier whose smallest and largest co-value agree was seen with exactly one: almost all
  of them. Only the few where they differ (candidates) are counted exactly, with blocklisted
  co-values left out. On millions of rows this replaces a distinct over every (identifier,
  co-identifier) pair, the most expensive step, by a handful of extra aggregates.
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
{#- the co_ columns each observation carries: the counted types, and user_id for attribution -#}
{%- set co_types = counted + ([] if 'user_id' in counted else ['user_id']) -%}
{%- set judged_list = "'" ~ (judged_types | join("', '")) ~ "'" -%}

{%- set observations -%}

    -- one row per (record, identifier column); slot is the column the value came from. Slots
    -- that no rule judges carry no co_ values (nothing to aggregate for them); an alias's
    -- previous_id carries them, since it is typed (and maybe judged) later
    {%- for t in simple_types + ['previous_id'] %}
    select
        '{{ t }}' as slot,
        {{ t }} as identifier_value,
        first_seen_at,
        last_seen_at,
        record_count
        {%- for n in co_types %},
        {% if t in judged_types or t == 'previous_id' -%}
        {{ n }} {%- else -%} cast(null as varchar) {%- endif %} as co_{{ n }}
        {%- endfor %}
    from {{ ref('int_identity_records') }}
    where {{ t }} is not null
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}
{%- endset %}

with observations as (
{{ observations }}

),

slot_values as (

    select
        slot,
        identifier_value,
        min(first_seen_at) as first_seen_at,
        max(last_seen_at) as last_seen_at,
        sum(record_count) as record_count,
        {%- for n in co_types %}
        min(co_{{ n }}) as min_{{ n }},
        max(co_{{ n }}) as max_{{ n }},
        {%- endfor %}
        max(case when co_user_id is not null then last_seen_at end) as recent_user_at,
        max_by(co_user_id, case when co_user_id is not null then last_seen_at end)
            as recent_user_id
    from observations
    group by slot, identifier_value

),

previous_ids as (

    -- an alias's previous_id is a former user_id when that value is used as a user_id, else an
    -- anonymous_id (typed per distinct previous_id value, not per record)
    select
        p.*,
        case when u.identifier_value is not null then 'user_id' else 'anonymous_id' end
            as identifier_type
    from slot_values as p
    left join slot_values as u
        on u.slot = 'user_id'
        and p.identifier_value = u.identifier_value
    where p.slot = 'previous_id'

),

identifiers as (

    -- previous_id values merged into the identifier they were typed as
    select
        coalesce(s.slot, p.identifier_type) as identifier_type,
        coalesce(s.identifier_value, p.identifier_value) as identifier_value,
        least(
            coalesce(s.first_seen_at, p.first_seen_at), coalesce(p.first_seen_at, s.first_seen_at)
        ) as first_seen_at,
        greatest(
            coalesce(s.last_seen_at, p.last_seen_at), coalesce(p.last_seen_at, s.last_seen_at)
        ) as last_seen_at,
        cast(coalesce(s.record_count, 0) + coalesce(p.record_count, 0) as bigint) as record_count,
        {%- for n in co_types %}
        least(coalesce(s.min_{{ n }}, p.min_{{ n }}), coalesce(p.min_{{ n }}, s.min_{{ n }}))
            as min_{{ n }},
        greatest(coalesce(s.max_{{ n }}, p.max_{{ n }}), coalesce(p.max_{{ n }}, s.max_{{ n }}))
            as max_{{ n }},
        {%- endfor %}
        case
            when p.recent_user_at > s.recent_user_at or s.recent_user_at is null
                then p.recent_user_id
            else s.recent_user_id
        end as recent_user_id
    from (select * from slot_values where slot <> 'previous_id') as s
    full outer join previous_ids as p
        on s.slot = p.identifier_type
        and s.identifier_value = p.identifier_value

),

numbered as (

    select
        -- numbered in canonical order (earliest seen, then type priority, then value): the
        -- smallest id of a cluster is its canonical member, and the user_id split's ties go to
        -- the earliest-seen user_id
        row_number() over (
            order by first_seen_at, {{ identity_priority_sql('identifier_type') | indent(12) }},
                identifier_value, identifier_type
        ) as identifier_id,
        *
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
        h.identifier_id,
        i.identifier_type,
        i.identifier_value,
        min(h.entry) as blocklist_entry,
        min(h.note) as blocklist_note
    from blocklist_hits as h
    inner join numbered as i on h.identifier_id = i.identifier_id
    group by h.identifier_id, i.identifier_type, i.identifier_value

),

candidates as (

    -- usable judged identifiers seen with two or more distinct values of some co-type
    -- (blocklisted ones included here; the exact count below leaves them out)
    select i.identifier_id, i.identifier_type, i.identifier_value, p.identifier_type as previous_type
    from numbered as i
    left join previous_ids as p on i.identifier_value = p.identifier_value
    where i.identifier_type in ({{ judged_list }})
        and i.identifier_id not in (select identifier_id from blocked)
        and (
            {%- for n in co_types %}
            i.min_{{ n }} <> i.max_{{ n }} {%- if not loop.last %} or {% endif %}
            {%- endfor %}
        )

),

candidate_observations as (

    -- the unpivot again rather than a second read of the observations CTE, which would make
    -- DuckDB materialize all of it (tens of millions of text cells) for a few candidates
    select c.identifier_id, o.*
    from (
{{ observations | indent(8, true) }}
    ) as o
    inner join candidates as c
        on o.identifier_value = c.identifier_value
        and (
            o.slot = c.identifier_type
            or (o.slot = 'previous_id' and c.previous_type = c.identifier_type)
        )

),

candidate_co_values as (

    {%- for n in co_types %}
    select identifier_id, '{{ n }}' as co_type, co_{{ n }} as co_value, last_seen_at
    from candidate_observations
    where co_{{ n }} is not null
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}

),

clean_candidate_co_values as (

    select v.*
    from candidate_co_values as v
    left join blocked as b
        on v.co_type = b.identifier_type
        and v.co_value = b.identifier_value
    where b.identifier_id is null

),

exact_counts as (

    select
        identifier_id
        {%- for n in counted %},
        count(distinct case when co_type = '{{ n }}' then co_value end) as {{ count_columns[n] }}
        {%- endfor %},
        max_by(case when co_type = 'user_id' then co_value end,
            case when co_type = 'user_id' then last_seen_at end) as most_recent_user_id
    from clean_candidate_co_values
    group by identifier_id

),

judged as (

    select
        i.identifier_id,
        i.identifier_type,
        i.identifier_value,
        i.first_seen_at,
        i.last_seen_at,
        i.record_count,
        {%- for t, c in count_columns.items() %}
        {% if t in counted -%}
        -- judged usable identifiers get a count (0, not null, when nothing was seen)
        case
            when b.identifier_id is not null or i.identifier_type not in ({{ judged_list }})
                then null
            when x.identifier_id is not null then coalesce(x.{{ c }}, 0)
            when i.min_{{ t }} is null then 0
            when i.min_{{ t }} in (
                select identifier_value from blocked where identifier_type = '{{ t }}'
            ) then 0
            else 1
        end
        {%- else -%} cast(null as bigint) {%- endif %} as {{ c }},
        {%- endfor %}
        case
            when i.identifier_type <> 'anonymous_id' or b.identifier_id is not null then null
            when x.identifier_id is not null then x.most_recent_user_id
            when i.recent_user_id in (
                select identifier_value from blocked where identifier_type = 'user_id'
            ) then null
            else i.recent_user_id
        end as most_recent_user_id,
        b.blocklist_entry,
        b.blocklist_note
    from numbered as i
    left join blocked as b on i.identifier_id = b.identifier_id
    left join exact_counts as x on i.identifier_id = x.identifier_id

),

detailed as (

    select
        *,
        case
            {%- for t, limits in over_shared.items() %}
            {%- for n, max_count in limits.items() %}
            when identifier_type = '{{ t }}' and {{ count_columns[n] }} > {{ max_count }}
                then 'seen with ' || cast({{ count_columns[n] }} as varchar)
                    || ' distinct {{ n }} values (over-shared above {{ max_count }})'
            {%- endfor %}
            {%- endfor %}
        end as over_shared_detail
    from judged

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
            then 'matches blocklist entry ''' || blocklist_entry || ''' ('
                || coalesce(blocklist_note, 'placeholder') || ')'
        else over_shared_detail
    end as rejection_detail,
    most_recent_user_id
from detailed
