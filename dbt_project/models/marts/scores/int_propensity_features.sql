{#-
  Propensity features per profile at three cutoffs, computed only from what happened strictly
  before each cutoff (W = var propensity_window_days, 30 by default):
    train  at as_of - 2W, labels from [cutoff, cutoff + W)   (parameters are fit here)
    eval   at as_of - W,  labels from [cutoff, as_of)        (out-of-time evaluation)
    score  at as_of,      no labels yet                      (today's scores)
  A profile appears at a cutoff when it had any event or order before it. Only orders that
  count as purchases (not cancelled/refunded) count, for features and labels alike.
-#}
{%- set as_of = headwater.as_of_timestamp() %}
{%- set window = headwater.profile_setting('propensity_window_days') | int %}
with cutoffs as (

    select 'train' as split, {{ headwater.add_days(as_of, -2 * window) }} as cutoff_at
    union all
    select 'eval', {{ headwater.add_days(as_of, -window) }}
    union all
    select 'score', {{ as_of }}

),

orders as (

    select profile_id, ordered_at, total
    from {{ ref('int_profile_orders') }}
    where counts_as_purchase

),

order_features as (

    select
        cutoffs.split,
        orders.profile_id,
        min(orders.ordered_at) as first_order_at,
        max(orders.ordered_at) as last_order_at,
        sum(case when orders.ordered_at >= {{ headwater.add_days('cutoffs.cutoff_at', -365) }}
            then 1 else 0 end) as orders_365d,
        sum(case when orders.ordered_at >= {{ headwater.add_days('cutoffs.cutoff_at', -365) }}
            then orders.total else 0 end) as spend_365d
    from cutoffs
    join orders on orders.ordered_at < cutoffs.cutoff_at
    group by cutoffs.split, orders.profile_id

),

event_features as (

    select
        cutoffs.split,
        events.profile_id,
        min(events.event_at) as first_event_at,
        max(events.event_at) as last_event_at,
        sum(case when events.event_at >= {{ headwater.add_days('cutoffs.cutoff_at', -30) }}
            then 1 else 0 end) as events_30d,
        sum(case when events.event_at >= {{ headwater.add_days('cutoffs.cutoff_at', -30) }}
            and events.event_name = 'Product Added' then 1 else 0 end) as cart_adds_30d
    from cutoffs
    join {{ ref('int_profile_events') }} as events on events.event_at < cutoffs.cutoff_at
    group by cutoffs.split, events.profile_id

),

labels as (

    select cutoffs.split, orders.profile_id, count(*) as orders_in_window
    from cutoffs
    join orders
        on orders.ordered_at >= cutoffs.cutoff_at
        and orders.ordered_at < {{ headwater.add_days('cutoffs.cutoff_at', window) }}
    where cutoffs.split <> 'score'
    group by cutoffs.split, orders.profile_id

),

population as (

    select split, profile_id from order_features
    union
    select split, profile_id from event_features

),

raw_features as (

    select
        population.split,
        cutoffs.cutoff_at,
        population.profile_id,
        least(coalesce({{ headwater.days_between('order_features.last_order_at',
            'cutoffs.cutoff_at') }}, 730), 730) as days_since_last_order,
        case when order_features.profile_id is not null then 1 else 0 end as has_ordered,
        coalesce(order_features.orders_365d, 0) as orders_365d,
        cast(coalesce(order_features.spend_365d, 0) as double) as spend_365d,
        least({{ headwater.days_between(
            'greatest(coalesce(event_features.last_event_at, order_features.last_order_at), '
            ~ 'coalesce(order_features.last_order_at, event_features.last_event_at))',
            'cutoffs.cutoff_at') }}, 730) as days_since_last_seen,
        coalesce(event_features.events_30d, 0) as events_30d,
        coalesce(event_features.cart_adds_30d, 0) as cart_adds_30d,
        least({{ headwater.days_between(
            'least(coalesce(event_features.first_event_at, order_features.first_order_at), '
            ~ 'coalesce(order_features.first_order_at, event_features.first_event_at))',
            'cutoffs.cutoff_at') }}, 730) as tenure_days,
        case
            when population.split = 'score' then null
            when labels.profile_id is not null then 1
            else 0
        end as purchased_in_window
    from population
    join cutoffs on cutoffs.split = population.split
    left join order_features
        on order_features.split = population.split
        and order_features.profile_id = population.profile_id
    left join event_features
        on event_features.split = population.split
        and event_features.profile_id = population.profile_id
    left join labels
        on labels.split = population.split and labels.profile_id = population.profile_id

)

select
    split,
    cutoff_at,
    profile_id,
    days_since_last_order,
    orders_365d,
    spend_365d,
    days_since_last_seen,
    events_30d,
    cart_adds_30d,
    tenure_days,
    -- Model inputs: log(1 + x) tames the long tails of counts, money and durations.
    ln(1 + days_since_last_order) as log_days_since_last_order,
    has_ordered,
    ln(1 + orders_365d) as log_orders_365d,
    ln(1 + spend_365d) as log_spend_365d,
    ln(1 + days_since_last_seen) as log_days_since_last_seen,
    ln(1 + events_30d) as log_events_30d,
    ln(1 + cart_adds_30d) as log_cart_adds_30d,
    ln(1 + tenure_days) as log_tenure_days,
    purchased_in_window
from raw_features
