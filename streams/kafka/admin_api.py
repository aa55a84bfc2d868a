"""Kafka's admin API as the operator tools (streams.control) use it: topics, configs, consumer-group offsets, ACLs
and SCRAM users, from confluent-kafka, reached through this module only."""

from confluent_kafka import ConsumerGroupTopicPartitions as ConsumerGroupTopicPartitions
from confluent_kafka.admin import AclBinding as AclBinding
from confluent_kafka.admin import AclBindingFilter as AclBindingFilter
from confluent_kafka.admin import AclOperation as AclOperation
from confluent_kafka.admin import AclPermissionType as AclPermissionType
from confluent_kafka.admin import ConfigResource as ConfigResource
from confluent_kafka.admin import NewTopic as NewTopic
from confluent_kafka.admin import ResourcePatternType as ResourcePatternType
from confluent_kafka.admin import ResourceType as ResourceType
from confluent_kafka.admin import ScramCredentialInfo as ScramCredentialInfo
from confluent_kafka.admin import ScramMechanism as ScramMechanism
from confluent_kafka.admin import UserScramCredentialDeletion as UserScramCredentialDeletion
from confluent_kafka.admin import UserScramCredentialUpsertion as UserScramCredentialUpsertion
