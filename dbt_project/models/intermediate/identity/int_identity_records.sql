{#-
  Every distinct combination of identifiers that arrived together in one record (a message, an
  order or a CRM contact), in wide form: one column per identifier type.

  Millions of events repeat the same few combinations (every track call of a logged-in session
  carries the same user_id and anonymous_id), so folding identical combinations first shrinks
  the graph work by an order of magnitude; the earliest record of each combination is kept as
  the evidence that identity_merges shows.

  previous_id comes only from alias messages; it is typed later (int_identity_identifiers) as a
  user_id when that value is also used as a user_id, else as an anonymous_id.
  context.device.id is not an identifier here: SDKs report hardware ids that households share.
-#}
with events as (

    select
        'events' as source,
        message_id as record_key,
        user_id,
        anonymous_id,
        case when message_type = 'alias' then previous_id end as previous_id,
        email,
        phone,
        cast(null as varchar) as crm_contact_id,
        event_at as seen_at,
        {{ identity_source_row() }} as source_row
    from {{ ref('stg_events') }}

),

orders as (

    select
        'orders' as source,
        order_id as record_key,
        user_id,
        cast(null as varchar) as anonymous_id,
        cast(null as varchar) as previous_id,
        email,
        phone,
        cast(null as varchar) as crm_contact_id,
        ordered_at as seen_at,
        {{ identity_source_row() }} as source_row
    from {{ ref('stg_orders') }}

),

crm as (

    select
        'crm' as source,
        contact_id as record_key,
        cast(null as varchar) as user_id,
        cast(null as varchar) as anonymous_id,
        cast(null as varchar) as previous_id,
        email,
        phone,
        contact_id as crm_contact_id,
        updated_at as seen_at,
        {{ identity_source_row() }} as source_row
    from {{ ref('stg_crm_contacts') }}

),

unioned as (

    select * from events
    union all
    select * from orders
    union all
    select * from crm

)

select
    -- internal key for this build only; no decision depends on it, so no sort (nor, on DuckDB,
    -- a single-threaded numbering) is paid for it
    {{ identity_record_id('source_row', 'source') }} as record_id,
    source,
    user_id,
    anonymous_id,
    previous_id,
    email,
    phone,
    crm_contact_id,
    min(seen_at) as first_seen_at,
    max(seen_at) as last_seen_at,
    cast(count(*) as bigint) as record_count,
    -- the earliest record carrying this combination: the evidence identity_merges shows (when
    -- two records share the earliest timestamp either may be shown; no decision depends on it)
    min_by(record_key, seen_at) as record_key
from unioned
where coalesce(user_id, anonymous_id, previous_id, email, phone, crm_contact_id) is not null
group by source, user_id, anonymous_id, previous_id, email, phone, crm_contact_id
