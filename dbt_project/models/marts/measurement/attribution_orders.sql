{#-
  Every order up to as_of with the send that earned it, if any (last touch):
  an order is attributed to the latest send to the same profile with
  sent_at < ordered_at <= sent_at + var attribution_window_days (default 3 days). Ties at the
  same instant go to a message before a list add, then by flow name and key.
  Revenue is net: an order whose status is in var excluded_order_statuses (cancelled, refunded,
  failed...) is attributed like any other, so it stays visible, but it is not a conversion and
  its revenue is 0 (order_total keeps what was charged).
  Orders no send touched, including orders of no known profile, are attributed = false: the
  unattributed revenue.
-#}
with orders as (

    select
        o.order_id,
        p.profile_id,
        o.total,
        o.currency,
        o.status,
        o.ordered_at,
        coalesce(o.status, '') not in
            {{ headwater.sql_string_list(headwater.profile_setting('excluded_order_statuses')) }}
            as is_conversion
    from {{ ref('stg_orders') }} as o
    left join {{ ref('int_profile_orders') }} as p on p.order_id = o.order_id
    where o.ordered_at <= {{ headwater.as_of_timestamp() }}

),

last_touch as (

    select
        o.order_id,
        s.idempotency_key,
        s.source,
        s.flow,
        s.journey,
        s.step,
        s.channel,
        s.destination,
        s.sent_at,
        s.send_week
    from orders as o
    join {{ ref('attribution_sends') }} as s
        on s.profile_id = o.profile_id
        and s.sent_at < o.ordered_at
        and o.ordered_at <= {{ headwater.add_days('s.sent_at',
                                   headwater.measurement_setting('attribution_window_days')) }}
    qualify row_number() over (
        partition by o.order_id
        order by s.sent_at desc, s.action_rank, s.flow, s.idempotency_key
    ) = 1

)

select
    o.order_id,
    o.profile_id,
    o.ordered_at,
    cast(date_trunc('week', o.ordered_at) as date) as order_week,
    o.status,
    o.currency,
    o.total as order_total,
    case when o.is_conversion then o.total else 0 end as revenue,
    o.is_conversion,
    t.order_id is not null as is_attributed,
    t.idempotency_key as send_idempotency_key,
    t.source,
    t.flow,
    t.journey,
    t.step,
    t.channel,
    t.destination,
    t.sent_at,
    t.send_week,
    {{ headwater.days_between('t.sent_at', 'o.ordered_at') }} * 24 as hours_after_send
from orders as o
left join last_touch as t on t.order_id = o.order_id
