{#-
  The sends that can earn credit for an order: one row per delivered message (idempotency key)
  whose action is in var attribution_actions (send, add) on a channel in var
  attribution_channels (email, sms: the channels that reach a person's inbox or phone; ads
  audience membership and internal webhooks are not touches), up to as_of.
  A key delivered twice (a retry after a lost answer) is one message: its first delivery counts.
  The profile is the delivery's, else the one identity_map gives its identifier (journey
  subjects that were anonymous when the step went).
-#}
with delivered as (

    select *
    from {{ ref('stg_activity_deliveries') }}
    where status = 'delivered'
      and action in {{ headwater.sql_string_list(headwater.measurement_setting('attribution_actions')) }}
      and channel in {{ headwater.sql_string_list(headwater.measurement_setting('attribution_channels')) }}
      and attempted_at <= {{ headwater.as_of_timestamp() }}
    qualify row_number() over (partition by idempotency_key order by attempted_at, attempt) = 1

)

select
    d.idempotency_key,
    d.attempt,
    d.source,
    d.flow,
    d.journey,
    d.step,
    d.channel,
    d.destination,
    d.action,
    coalesce(d.profile_id, m.profile_id) as profile_id,
    d.attempted_at as sent_at,
    cast(date_trunc('week', d.attempted_at) as date) as send_week,
    -- Tie-break between sends at the same instant: a message beats a list add.
    case when d.action = 'send' then 0 else 1 end as action_rank
from delivered as d
left join {{ ref('identity_map') }} as m
    on d.profile_id is null
    and m.identifier_type = d.identifier_type
    and m.identifier_value = d.identifier_value
