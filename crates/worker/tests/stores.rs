//! Every worker case on the memory store and on a SQLite file.

mod cases;
mod common;

macro_rules! on_memory_and_sqlite {
    ($($module:ident :: $case:ident),* $(,)?) => {
        $(
            mod $case {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn memory() {
                    crate::cases::$module::$case(crate::common::Kind::Memory).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    crate::cases::$module::$case(crate::common::Kind::Sqlite).await;
                }
            }
        )*
    };
}

every_case!(on_memory_and_sqlite);
