{#-
  Revenue per send: one row per flow (sync, or journey step), channel, destination and week of
  the send. An attributed order's revenue counts in the week of the send that earned it, so
  revenue_per_send divides like by like (what that week's sends brought in).
-#}
with sends as (

    select
        source, flow, journey, step, channel, destination, send_week,
        count(*) as sends,
        count(distinct profile_id) as profiles_reached
    from {{ ref('attribution_sends') }}
    group by source, flow, journey, step, channel, destination, send_week

),

earned as (

    select
        flow, channel, destination, send_week,
        count(*) as attributed_orders,
        sum(case when is_conversion then 1 else 0 end) as conversions,
        sum(revenue) as revenue,
        sum(case when is_conversion then 0 else 1 end) as refunded_or_cancelled_orders
    from {{ ref('attribution_orders') }}
    where is_attributed
    group by flow, channel, destination, send_week

)

select
    s.source,
    s.flow,
    s.journey,
    s.step,
    s.channel,
    s.destination,
    s.send_week as week,
    s.sends,
    s.profiles_reached,
    coalesce(e.attributed_orders, 0) as attributed_orders,
    coalesce(e.conversions, 0) as conversions,
    coalesce(e.refunded_or_cancelled_orders, 0) as refunded_or_cancelled_orders,
    cast(coalesce(e.revenue, 0) as double) as revenue,
    cast(coalesce(e.revenue, 0) as double) / s.sends as revenue_per_send,
    cast(coalesce(e.conversions, 0) as double) / s.sends as conversion_rate
from sends as s
left join earned as e
    on e.flow = s.flow
    and e.channel = s.channel
    and coalesce(e.destination, '') = coalesce(s.destination, '')
    and e.send_week = s.send_week
