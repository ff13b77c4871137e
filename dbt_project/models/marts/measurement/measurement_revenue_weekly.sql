{#-
  All revenue per week of the order, split into what a send earned (attributed) and what no
  send touched (unattributed), so credit given to flows is always seen against the total.
-#}
select
    order_week as week,
    count(*) as orders,
    sum(case when is_conversion then 1 else 0 end) as conversions,
    sum(case when is_conversion then 0 else 1 end) as refunded_or_cancelled_orders,
    cast(sum(revenue) as double) as revenue,
    sum(case when is_attributed and is_conversion then 1 else 0 end) as attributed_conversions,
    cast(sum(case when is_attributed then revenue else 0 end) as double) as attributed_revenue,
    sum(case when not is_attributed and is_conversion then 1 else 0 end)
        as unattributed_conversions,
    cast(sum(case when is_attributed then 0 else revenue end) as double) as unattributed_revenue
from {{ ref('attribution_orders') }}
group by order_week
