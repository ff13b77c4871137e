{#- Logistic regression parameters per score, fit in SQL on the train split
    (macros/scores/propensity.sql explains the method). -#}
{{ headwater.fit_logistic_newton(
    ref('propensity_training_set'),
    headwater.propensity_features(),
    headwater.profile_setting('propensity_newton_iterations') | int,
    headwater.profile_setting('propensity_l2') | float,
) }}
