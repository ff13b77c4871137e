{#-
  How fresh each input of the measurement is at as_of: the newest row of every raw table (by
  its landing column) and of both activity feeds, and its lag in hours. A feed nothing wrote
  yet has latest_at null.
-#}
{%- set now = headwater.as_of_timestamp() %}
with latest as (

    select 'raw.events' as input, max(received_at) as latest_at, count(*) as row_count
    from {{ ref('stg_events') }}
    union all
    select 'raw.orders', max(ordered_at), count(*) from {{ ref('stg_orders') }}
    union all
    select 'raw.crm_contacts', max(updated_at), count(*) from {{ ref('stg_crm_contacts') }}
    union all
    select 'raw.consent', max(recorded_at), count(*) from {{ ref('stg_consent') }}
    union all
    select 'activity.deliveries', max(attempted_at), count(*)
    from {{ ref('stg_activity_deliveries') }}
    union all
    select 'activity.journey_events', max(recorded_at), count(*)
    from {{ ref('stg_activity_journey_events') }}

)

select
    input,
    latest_at,
    row_count,
    {{ now }} as measured_at,
    {{ headwater.days_between('latest_at', now) }} * 24 as lag_hours
from latest
