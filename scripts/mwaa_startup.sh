# shellcheck shell=bash
# headrace's MWAA startup script (packaged as startup.sh; the environment's StartupScriptS3Path).
#
# MWAA sets no arbitrary environment variables, but it exposes every Airflow configuration
# option of the environment as AIRFLOW__<SECTION>__<KEY>. So the environment (CloudFormation)
# sets options `headrace.<name>`, and this script, which MWAA runs on every component before
# Airflow starts, exports each as the variable include/config.py reads:
#
#   headrace.pipeline_target  -> PIPELINE_TARGET   (unset: aws, the only target MWAA runs)
#   headrace.aws_region       -> AWS_REGION        (only where MWAA has not set AWS_REGION)
#   headrace.<name>           -> HEADRACE_<NAME>   for every <name> in HEADRACE_MWAA_SETTINGS
#
# Local-only settings (local runs dir, landing inbox and its poll interval) and the local PII
# salt are never taken from options: on aws the salt comes from Secrets Manager. An option that
# is not in the list is reported and ignored, so a typo shows in the startup log rather than
# silently leaving a default. Nothing here prints a value.
#
# MWAA sources this file, so it defines and calls one function and leaves no shell options set.

HEADRACE_MWAA_SETTINGS=(
    lake_root
    bucket
    sagemaker_role_arn
    glue_role_arn
    emr_serverless_role_arn
    kms_key_arn
    subnet_ids
    security_group_ids
    pii_salt_secret_arn
    spark_engine
    emr_serverless_application_id
    emr_cluster_id
    alerts_topic_arn
    landing_queue_url
    stuck_after_hours
    training_instance_type
    training_instance_count
    training_volume_gb
    training_max_runtime_s
    training_use_spot
    training_max_wait_s
    training_image_uri
    tuning_max_jobs
    tuning_max_parallel_jobs
)

headrace_export_settings() {
    local name upper option variable known
    export PIPELINE_TARGET="${AIRFLOW__HEADRACE__PIPELINE_TARGET:-aws}"

    if [[ -n "${AIRFLOW__HEADRACE__AWS_REGION:-}" ]]; then
        if [[ -z "${AWS_REGION:-}" ]]; then
            export AWS_REGION="${AIRFLOW__HEADRACE__AWS_REGION}"
        elif [[ "${AWS_REGION}" != "${AIRFLOW__HEADRACE__AWS_REGION}" ]]; then
            echo "headrace startup: headrace.aws_region differs from the environment's" \
                "AWS_REGION=${AWS_REGION}; keeping AWS_REGION" >&2
        fi
    fi

    for name in "${HEADRACE_MWAA_SETTINGS[@]}"; do
        upper="${name^^}"
        option="AIRFLOW__HEADRACE__${upper}"
        if [[ -n "${!option:-}" ]]; then
            export "HEADRACE_${upper}=${!option}"
        fi
    done

    # Report options this script does not know (typos, or settings that are local-only).
    while IFS= read -r variable; do
        upper="${variable#AIRFLOW__HEADRACE__}"
        known=0
        for name in pipeline_target aws_region "${HEADRACE_MWAA_SETTINGS[@]}"; do
            [[ "${name^^}" == "${upper}" ]] && known=1
        done
        if [[ "${known}" == 0 ]]; then
            echo "headrace startup: ignoring unknown option headrace.${upper,,}" >&2
        fi
    done < <(compgen -e | grep '^AIRFLOW__HEADRACE__' | sort)
}

headrace_export_settings
unset -f headrace_export_settings
