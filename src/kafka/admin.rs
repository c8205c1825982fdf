//! The admin calls the dashboard makes: DeleteRecords, for broker-side reclaim
//! (`actions::reclaim`).

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};

use super::KafkaSettings;

/// How long the broker may take to answer DeleteRecords.
const TIMEOUT: Duration = Duration::from_secs(30);

/// What the broker answered for one partition: its new log start, or why not.
pub type PartitionDeletion = (i32, std::result::Result<i64, RDKafkaErrorCode>);

/// An admin client of the dashboard's cluster.
pub struct BrokerAdmin {
    admin: AdminClient<DefaultClientContext>,
}

impl BrokerAdmin {
    /// An admin client with the dashboard's client settings (security included).
    pub fn new(settings: &KafkaSettings) -> crate::error::Result<Self> {
        Ok(BrokerAdmin {
            admin: settings.client_config().create()?,
        })
    }

    /// Delete the records of `topic` below each `(partition, offset)`. Per partition, the
    /// broker's new log start or its error; an error for the whole request (no broker, or
    /// none that supports DeleteRecords) is the `Err`.
    pub async fn delete_records(
        &self,
        topic: &str,
        to: &[(i32, i64)],
    ) -> std::result::Result<Vec<PartitionDeletion>, KafkaError> {
        let mut tpl = TopicPartitionList::new();
        for (partition, offset) in to {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))?;
        }
        let options = AdminOptions::new()
            .request_timeout(Some(TIMEOUT))
            .operation_timeout(Some(TIMEOUT));
        let result = self.admin.delete_records(&tpl, &options).await?;
        Ok(result
            .elements()
            .iter()
            .map(|e| {
                let answer = match (e.error(), e.offset()) {
                    (Err(e), _) => Err(e.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail)),
                    (Ok(()), Offset::Offset(low)) => Ok(low),
                    (Ok(()), _) => Err(RDKafkaErrorCode::InvalidMessage),
                };
                (e.partition(), answer)
            })
            .collect())
    }
}
